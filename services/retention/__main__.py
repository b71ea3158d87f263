from shared.runtime import run_service

from services.retention.app import bootstrap

if __name__ == "__main__":
    run_service("retention", lambda settings, stop: bootstrap(settings).serve(stop))
