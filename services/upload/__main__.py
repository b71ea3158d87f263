from services.upload.app import bootstrap
from shared.runtime.service import run_service

if __name__ == "__main__":
    run_service("upload", bootstrap)
