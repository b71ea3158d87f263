from shared.runtime import run_service

from services.delivery.app import bootstrap

if __name__ == "__main__":
    run_service("delivery", lambda settings, stop: bootstrap(settings)[0].serve(stop))
