"""The browser editor behind ``diffedit ui`` (Gradio, the ``[ui]`` extra): drop a photo, move sliders, look.

Each browser session gets its own :class:`~diffedit_cli.ui.session.EditorSession` and folder under the run's output
folder; a render is written there and shown beside the input with the ``diffedit edit`` command that makes the same
image from the shell. The model is loaded once and shared by every session. Only this module imports gradio.
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import gradio as gr

from .session import PREVIEW_STEPS, EditorSession, EditSettings
from ..errors import DiffeditError

MAX_UPLOAD = "50mb"


def view(path: Path) -> str:
    """What the page shows for an image: itself, or (under 256 px, a toy model's face) a copy enlarged by a whole
    factor with nearest-neighbour, so that the edit can be seen; downloads stay the original."""
    from PIL import Image

    with Image.open(path) as img:
        factor = -(-256 // max(img.size))
        if factor <= 1:
            return str(path)
        shown = path.with_name(f"{path.stem}_view.png")
        img.convert("RGB").resize((img.width * factor, img.height * factor), Image.NEAREST).save(shown)
    return str(shown)


def numbered(path: Path, faces) -> str:
    """The photo with each detected face boxed and numbered (the numbers the face list offers)."""
    from PIL import Image, ImageDraw

    with Image.open(path) as img:
        shown = img.convert("RGB")
    draw = ImageDraw.Draw(shown)
    width = max(2, shown.width // 300)
    for number, (x0, y0, x1, y1) in faces:
        draw.rectangle((x0, y0, x1, y1), outline=(255, 64, 32), width=width)
        draw.text((x0 + 3 * width, y0 + 2 * width), str(number), fill=(255, 64, 32))
    out = path.with_name(f"{path.stem}_faces.png")
    shown.save(out)
    return str(out)


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def build_app(new_session: Callable[[Path], EditorSession], attributes: List[str], n_levels: int,
              root: Path, directions: Sequence[str] = (), photos: bool = True) -> gr.Blocks:
    """The editor page: an input, one slider per attribute and per direction (``FILE:NAME``), top-k and levels,
    the face of a photo, preview / full renders, the command, the edited image and the latent file."""

    def session_of(state: Optional[EditorSession]) -> EditorSession:
        return state if state is not None else new_session(root / uuid.uuid4().hex)

    def settings_of(face, topk, levels, values) -> EditSettings:
        attrs = {name: float(v) for name, v in zip(attributes, values) if v}
        dirs = {name: float(v) for name, v in zip(directions, values[len(attributes):]) if v}
        return EditSettings(attrs, int(topk) if topk else None,
                            sorted(int(level) - 1 for level in levels) if levels else None, dirs, face or "largest")

    def upload(path, state):
        session = session_of(state)
        if path is None:
            return session, None, gr.update()
        try:
            session.set_input(Path(path))
            found = session.faces_found()
        except DiffeditError as err:
            raise gr.Error(str(err)) from None
        if session.photo_mode:
            if not found:
                raise gr.Error("no face found in this photo")
            choices = ["largest", "all", *(str(number) for number, _ in found)]
            return session, numbered(session.input, found), gr.update(choices=choices, value="largest")
        return session, view(session.input), gr.update()

    def upload_latent(path, state):
        session = session_of(state)
        if path is None:
            return session, gr.update()
        try:
            session.set_input(Path(path))
        except DiffeditError as err:
            raise gr.Error(str(err)) from None
        return session, None

    def render(full: bool):
        def run(state, face, topk, levels, *values):
            session = session_of(state)
            settings = settings_of(face, topk, levels, values)
            if not full and (session.input is None or not (settings.edits() or settings.direction_edits())):
                return session, gr.update(), gr.update(), gr.update()  # a slider let go at 0, or nothing to edit yet
            try:
                image = session.render(settings, full)
            except DiffeditError as err:
                raise gr.Error(str(err)) from None
            label = "full quality (the command line's defaults)" if full else f"preview ({PREVIEW_STEPS} decoding steps)"
            return session, gr.update(value=view(image), label=f"Edit: {label}"), session.command(settings, full=full), \
                str(image)
        return run

    with gr.Blocks(title="diffedit editor") as app:
        state = gr.State(None)
        gr.Markdown("## diffedit: edit a face with sliders\nDrop a photo (faces are found, aligned, edited and pasted "
                    "back) and move the sliders. *Preview* decodes in a few steps; *Render full quality* uses the "
                    "command line's defaults. The first render of an input inverts it; later ones reuse that.")
        with gr.Row():
            source = gr.Image(type="filepath", label="Input", elem_id="input", sources=["upload"], height=320)
            result = gr.Image(type="filepath", label="Edit", elem_id="result", interactive=False, height=320)
        latent_in = gr.File(label="...or a latent file (.safetensors from 'diffedit encode')", file_types=[".safetensors"],
                            elem_id="latent-input")
        with gr.Row():
            preview = gr.Button(f"Preview ({PREVIEW_STEPS} steps)", elem_id="preview")
            full = gr.Button("Render full quality", variant="primary", elem_id="render")
        with gr.Accordion("Attributes", open=True):
            search = gr.Textbox(placeholder="filter attributes (e.g. hair)", show_label=False, elem_id="filter")
            sliders = [gr.Slider(-1.0, 1.0, value=0.0, step=0.05, label=name, elem_id=f"attr-{name}")
                       for name in attributes]
            sliders += [gr.Slider(-1.0, 1.0, value=0.0, step=0.05, label=f"direction {name}", elem_id=f"dir-{k}")
                        for k, name in enumerate(directions)]
        with gr.Row():
            face = gr.Dropdown(["largest", "all", "0", "1", "2", "3", "4", "5"], value="largest", visible=photos,
                               label="face of the photo (0 = leftmost)")
            topk = gr.Number(value=0, precision=0, minimum=0, label="top-k (HDAE truncation; 0: all coordinates)")
            levels = gr.CheckboxGroup([str(k + 1) for k in range(n_levels)], label="levels (1 = finest; none: all)")
        command = gr.Textbox(label="The same edit from the shell", elem_id="command", interactive=False)
        with gr.Row():
            download = gr.File(label="Edited image", elem_id="download")
            latent = gr.File(label="Latent file (z_sem + x_T)", elem_id="latent")
        save_latent = gr.Button("Save the latent file", elem_id="save-latent")
        source.upload(upload, [source, state], [state, source, face])
        latent_in.upload(upload_latent, [latent_in, state], [state, source])
        search.change(lambda text: [gr.update(visible=text.strip().lower() in name.lower())
                                    for name in [*attributes, *directions]], search, sliders)
        for button, full_quality in ((preview, False), (full, True)):
            button.click(render(full_quality), [state, face, topk, levels, *sliders],
                         [state, result, command, download])
        for slider in sliders:  # a preview as soon as a slider is let go (queued: one render at a time)
            slider.release(render(False), [state, face, topk, levels, *sliders], [state, result, command, download])

        def export(state, face, topk, levels, *values):
            session = session_of(state)
            try:
                return session, str(session.export_latent(settings_of(face, topk, levels, values)))
            except DiffeditError as err:
                raise gr.Error(str(err)) from None
        save_latent.click(export, [state, face, topk, levels, *sliders], [state, latent])
    return app


def launch(session_factory: Callable[[Path], EditorSession], attributes: List[str], n_levels: int, root: Path,
           host: str = "127.0.0.1", port: int = 7860, block: bool = True, directions: Sequence[str] = (),
           photos: bool = True):
    """Serve the editor on ``host:port`` (one clear error when the port is taken); returns the app."""
    if not port_free(host, port):
        raise DiffeditError(f"port {port} on {host} is taken (another diffedit ui?): pass another port", param="port")
    app = build_app(session_factory, attributes, n_levels, root, directions, photos)
    app.queue(default_concurrency_limit=1).launch(server_name=host, server_port=port, share=False, inbrowser=False,
                                                  max_file_size=MAX_UPLOAD, prevent_thread_lock=not block,
                                                  allowed_paths=[str(root)], quiet=True, show_error=True)
    return app
