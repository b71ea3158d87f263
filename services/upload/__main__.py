import uvicorn

from shared.logs import setup_logging
from shared.settings import get_settings

from services.upload.app import build_app

if __name__ == "__main__":
    settings = get_settings()
    setup_logging("upload", settings.log_level)
    # uvicorn handles SIGINT/SIGTERM: it stops accepting, finishes requests, runs the lifespan exit.
    # log_config=None: uvicorn's own records go through our formatter too (control characters escaped).
    uvicorn.run(build_app(settings), host=settings.bind_host, port=settings.upload_port, log_level="warning",
                log_config=None)
