from shared.runtime import run_service

from services.resizer.app import bootstrap

if __name__ == "__main__":
    run_service("resizer", lambda settings, stop: bootstrap(settings).serve(stop))
