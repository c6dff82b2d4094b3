"""The browser editor: the session's renders equal the command it shows, byte for byte (fp32); in a real headless
Chromium the page uploads a face, a slider edits it, and the shown command reproduces the image."""

import os
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffedit_cli import pipeline
from diffedit_cli.cli import main
from diffedit_cli.ui.session import EditorSession, EditSettings
from diffedit_cli.errors import InputError
from diffedit_cli.sampling import DEFAULT

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SAMPLING = DEFAULT.replace(steps=3, inv_steps=3, precision="fp32")


def _session(tmp_path, faces=None):
    model = pipeline.load("toyfaces", "cpu", ("classifier",))
    return EditorSession(model, "toyfaces", tmp_path / "session", faces, SAMPLING, "cpu")


def _run_shown(command: str, tmp_path: Path, name: str) -> Path:
    argv = shlex.split(command)[1:]
    out = tmp_path / name
    argv[argv.index("--out") + 1] = str(out)
    assert main(argv) == 0
    return out


def test_sliders_render_what_the_shown_command_makes(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFEDIT_CACHE", str(tmp_path / "cache"))
    session = _session(tmp_path)
    session.set_input(EXAMPLES / "face.png")
    settings = EditSettings({"Smiling": 0.6, "Eyeglasses": 0.0, "Male": -0.2})
    image = session.render(settings, full=True)
    command = session.command(settings)
    assert "--attr Smiling=0.6 --attr Male=-0.2" in command and "Eyeglasses" not in command
    assert "--precision fp32" in command and "--steps 3" in command
    cli = _run_shown(command, tmp_path, "cli.png")
    assert np.array_equal(np.asarray(Image.open(image)), np.asarray(Image.open(cli)))
    preview = session.render(settings, full=False)  # fewer decoding steps, the same (cached) inversion
    assert preview != image and image.is_file() and "--steps 3" in session.command(settings, full=False)


def test_bad_uploads_and_empty_edits_are_one_line(tmp_path):
    session = _session(tmp_path)
    with pytest.raises(InputError, match="no input"):
        session.render(EditSettings({"Smiling": 0.5}))
    bad = tmp_path / "x.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(InputError):
        session.set_input(bad)
    session.set_input(EXAMPLES / "face.png")
    with pytest.raises(InputError, match="slider"):
        session.render(EditSettings({"Smiling": 0.0}))
    assert sorted(p.name for p in (tmp_path / "session").iterdir()) == ["input_001.png"]  # the refused upload left nothing


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_port_taken_is_one_clear_line(capsys):
    pytest.importorskip("gradio")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert main(["ui", "--port", str(port), "--aligned", "--out", "/tmp/diffedit-ui-test"]) == 2
    assert f"port {port}" in capsys.readouterr().err


def test_the_page_edits_a_face_in_a_real_browser(tmp_path):
    """Headless Chromium (Debian's chromium + chromium-driver) drives the page served by 'diffedit ui'."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        pytest.skip("no chromium / chromedriver (apt-get install chromium chromium-driver)")
    port = _free_port()
    env = {**os.environ, "DIFFEDIT_CACHE": str(tmp_path / "cache")}
    server = subprocess.Popen(["python", "-m", "diffedit_cli", "ui", "--aligned", "--port", str(port), "--out",
                               str(tmp_path / "ui"), "--device", "cpu", "--precision", "fp32"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,2400"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium")
    driver = None
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None, server.stderr.read()
            time.sleep(0.5)
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 90)
        upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#input input[type=file]")))
        upload.send_keys(str(EXAMPLES / "face.png"))
        wait.until(lambda d: list((tmp_path / "ui").glob("*/input_*.png")))
        number = driver.find_element(By.CSS_SELECTOR, "#attr-Smiling input[type=number]")
        number.clear()
        number.send_keys("0.8\n")
        driver.find_element(By.CSS_SELECTOR, "#render").click()
        def full_render_shown(d):  # a preview (5 steps) may come first: sliders preview as they are let go
            text = d.find_element(By.CSS_SELECTOR, "#command textarea").get_attribute("value")
            return text if text and "--steps 5" not in text else False
        shown = wait.until(full_render_shown)
        driver.save_screenshot(str(tmp_path / "page.png"))
        renders = [p for p in (tmp_path / "ui").glob("*/render_*.png") if not p.stem.endswith("_view")]
        assert len(renders) == 1 and "--attr Smiling=0.8" in shown
        edited = np.asarray(Image.open(renders[0])).astype(int)
        original = np.asarray(Image.open(EXAMPLES / "face.png").convert("RGB").resize(edited.shape[:2][::-1])).astype(int)
        mouth = (slice(40, 56), slice(20, 44))  # the lower middle of the 64 px toy face
        assert np.abs(edited[mouth] - original[mouth]).mean() > 2
        # the shown command in a fresh process, as a user would paste it (and with the server's default threads:
        # fp32 sums may round differently with another thread count, and tests change this process's)
        argv = shlex.split(shown)[1:]
        argv[argv.index("--out") + 1] = str(tmp_path / "cli.png")
        done = subprocess.run(["python", "-m", "diffedit_cli", *argv], env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        assert np.array_equal(np.asarray(Image.open(tmp_path / "cli.png")), np.asarray(Image.open(renders[0])))
        if os.environ.get("DIFFEDIT_SCREENSHOT"):
            shutil.copy(tmp_path / "page.png", os.environ["DIFFEDIT_SCREENSHOT"])
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=30)


def test_a_photo_is_found_aligned_edited_and_pasted_back_as_the_command_does(tmp_path, monkeypatch):
    from diffedit_cli.jobs.photos import FaceOptions

    monkeypatch.setenv("DIFFEDIT_CACHE", str(tmp_path / "cache"))
    session = _session(tmp_path, FaceOptions(detector="dlib", face="largest"))
    session.set_input(EXAMPLES / "astronaut.png")
    settings = EditSettings({"Smiling": 0.5})
    image = session.render(settings, full=True)
    command = session.command(settings)
    assert "--align --paste-back --detector dlib --face largest" in command
    cli = _run_shown(command, tmp_path, "cli.png")
    photo = np.asarray(Image.open(EXAMPLES / "astronaut.png").convert("RGB"))
    rendered = np.asarray(Image.open(image))
    assert rendered.shape == photo.shape  # the whole photo, the face pasted back
    assert np.array_equal(rendered, np.asarray(Image.open(cli)))


def test_direction_sliders_and_the_latent_file(tmp_path, monkeypatch):
    from diffedit_cli.io.latents import load_latent

    monkeypatch.setenv("DIFFEDIT_CACHE", str(tmp_path / "cache"))
    dirs = tmp_path / "dirs.safetensors"
    assert main(["directions", "pca", str(EXAMPLES / "face.png"), str(EXAMPLES / "face2.png"), str(EXAMPLES / "face.png"),
                 "-k", "1", "--out", str(dirs), "--model", "toyfaces", "-q"]) == 0
    session = _session(tmp_path)
    session.set_input(EXAMPLES / "face2.png")
    settings = EditSettings(directions={f"{dirs}:pc01": 0.4})
    image = session.render(settings)
    command = session.command(settings)
    assert f"--direction {dirs}:pc01=0.4" in command
    assert np.array_equal(np.asarray(Image.open(image)), np.asarray(Image.open(_run_shown(command, tmp_path, "c.png"))))
    latent = session.export_latent(settings)
    assert main(["encode", str(EXAMPLES / "face2.png"), "--out", str(tmp_path / "e.safetensors"), "--inv-steps", "3",
                 "--precision", "fp32", "-q"]) == 0
    assert np.array_equal(load_latent(latent).x_T.numpy(), load_latent(tmp_path / "e.safetensors").x_T.numpy())


def test_a_latent_file_is_an_input_and_a_photo_lists_its_faces(tmp_path, monkeypatch):
    from diffedit_cli.jobs.photos import FaceOptions

    monkeypatch.setenv("DIFFEDIT_CACHE", str(tmp_path / "cache"))
    latent = tmp_path / "face.safetensors"
    assert main(["encode", str(EXAMPLES / "face.png"), "--out", str(latent), "--inv-steps", "3", "--precision", "fp32",
                 "-q"]) == 0
    session = _session(tmp_path, FaceOptions(detector="dlib", face="largest"))
    session.set_input(latent)
    assert session.is_latent and not session.photo_mode and session.faces_found() == []
    settings = EditSettings({"Smiling": 0.5})
    image = session.render(settings)
    command = session.command(settings)
    assert "--align" not in command and command.split()[2].endswith(".safetensors")
    assert np.array_equal(np.asarray(Image.open(image)), np.asarray(Image.open(_run_shown(command, tmp_path, "l.png"))))
    assert session.export_latent(settings) == session.input
    other = tmp_path / "other.safetensors"
    assert main(["encode", str(EXAMPLES / "face.png"), "--out", str(other), "--model", "toyfaces-hdae",
                 "--inv-steps", "2", "-q"]) == 0
    with pytest.raises(InputError, match="encoded with model"):
        session.set_input(other)
    session.set_input(EXAMPLES / "astronaut.png")
    found = session.faces_found()
    assert [number for number, _ in found] == [0] and len(found[0][1]) == 4
