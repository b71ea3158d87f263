from shared.runtime.service import run_service

from services.delivery.app import bootstrap

if __name__ == "__main__":
    run_service("delivery", bootstrap)
