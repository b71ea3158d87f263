"""The README's "Send a first photo (curl)" walkthrough, run line by line by bash against a real
`fileshare run`, as a newcomer types it: it must keep working whenever the README or the API changes."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
from pathlib import Path

from PIL import Image

from tests import imagecorpus as corpus
from tests.launcher import launched, run_env, wait_all_ready
from tests.support import wait_until

REPO = Path(__file__).resolve().parents[2]
SECTION = "## Send a first photo (curl)"


def walkthrough() -> str:
    """The first sh block of the README's walkthrough section."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION) :]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def for_this_stack(script: str, env: dict[str, str]) -> str:
    """The same lines, pointed at the test's stack: its ports, and the repository's .venv."""
    return (
        script.replace("http://127.0.0.1:8080", f"http://127.0.0.1:{env['FS_UPLOAD_PORT']}")
        .replace("http://127.0.0.1:8081", f"http://127.0.0.1:{env['FS_DELIVERY_PORT']}")
        .replace(".venv/bin/", f"{REPO}/.venv/bin/")
    )


def json_answers(output: str) -> list[dict]:
    """The JSON documents curl printed one after another (most without a newline between them)."""
    decoder, answers, pos = json.JSONDecoder(), [], 0
    while (start := output.find("{", pos)) != -1:
        answer, pos = decoder.raw_decode(output, start)
        answers.append(answer)
    return answers


def bash(script: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"the walkthrough failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_readme_walkthrough_sends_a_photo_and_downloads_it_resized_without_metadata(tmp_path):
    env = run_env(tmp_path)
    with launched(env, tmp_path / "run.log") as proc:
        wait_all_ready(proc, tmp_path / "run.log", env)
        work = tmp_path / "newcomer"
        work.mkdir()
        (work / "photo.jpg").write_bytes(corpus.to_jpeg(corpus.photo(1600, 1200), exif=corpus.camera_exif()))
        script = for_this_stack(walkthrough(), env)
        # Step 5 says "follow it until published": the test waits there, as the newcomer would.
        head, _, tail = script.partition("# 5.")
        env_vars = "\n".join(f"export {k}={v!r}" for k, v in env.items() if k.startswith("FS_"))
        state = work / "state.sh"
        out = bash(f"{env_vars}\n{head}\ndeclare -p ACCT CONV AGENT UP DL FILE_ID > {state}", work, dict(os.environ))
        file_id = json_answers(out)[-1]["file_id"]
        status = f'{REPO}/.venv/bin/python -c \'import httpx,sys; print(httpx.get(sys.argv[1], headers={{"Authorization": "Bearer " + sys.argv[2]}}).json()["status"])\''
        wait_until(
            lambda: (
                bash(f"source {state}; {status} $UP/v1/files/$FILE_ID $AGENT", work, dict(os.environ)).strip()
                == "published"
            ),
            timeout=60,
            what="the walkthrough's photo to be published",
        )
        out = bash(f"source {state}\n# 5.{tail}", work, dict(os.environ))

    with Image.open(io.BytesIO((work / "resized.jpg").read_bytes())) as resized:
        assert (resized.format, max(resized.size)) == ("JPEG", 800)
        assert not resized.getexif()
    status, transcript = json_answers(out)
    assert (status["file_id"], status["status"]) == (file_id, "published")
    assert [m["file_id"] for m in transcript["messages"]] == [file_id]
    assert transcript["messages"][0]["caption"] == "Here is the screenshot"
