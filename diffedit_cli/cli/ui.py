"""``diffedit ui``: the browser editor (the ``[ui]`` extra; gradio is imported only here, when the command runs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from ..errors import DiffeditError
from .options import DetectorOpt, DeviceOpt, ModelOpt, PrecisionOpt, face_options, ready_model


def ui_cmd(
    model: ModelOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to serve on (default: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to serve on.")] = 7860,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the sessions' inputs and renders (one sub-folder per browser session).")] = Path("diffedit-ui"),
    aligned: Annotated[bool, typer.Option("--aligned", help="Inputs are FFHQ-aligned faces: no detection, no paste-back.")] = False,
    directions: Annotated[Optional[List[Path]], typer.Option("--directions", help="Direction file (repeatable): one slider per direction in it ('diffedit directions').", show_default=False)] = None,
    detector: DetectorOpt = "auto", device: DeviceOpt = "auto", precision: PrecisionOpt = None,
):
    """A local web editor: drop a photo, move one slider per attribute, look; export the image and the command.

    Faces are detected, aligned, edited and pasted back into the photo (--aligned: inputs are aligned faces). The
    first render of a photo inverts it (the latent cache keeps it); a preview decodes in 5 steps, "Render full
    quality" with the command line's defaults. Every render shows the 'diffedit edit' command that makes the same
    image. Served on 127.0.0.1 only unless --host says otherwise; Ctrl-C stops it.

    Example: pip install -e ".[ui]" && diffedit ui --model ffhq256
    """
    try:
        import gradio  # noqa: F401  (the optional [ui] extra)
    except ImportError:
        raise DiffeditError("the editor needs gradio: pip install 'diffedit[ui]'") from None
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("GRADIO_TEMP_DIR", str((out / ".gradio").resolve()))  # nothing written outside --out
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from ..ui.session import EditorSession
    from ..networks.hierarchy import num_levels
    from ..sampling import DEFAULT
    from ..ui.app import launch

    faces = None if aligned else face_options(True, False, "largest", detector, None, device)
    loaded = ready_model(model, device, components=("classifier",))
    sampling = DEFAULT.replace(precision=precision)
    spec = model or "toyfaces"
    from ..editing.directions import check_directions_model, load_directions

    names = []
    for path in directions or []:
        found = load_directions(path)
        check_directions_model(found, loaded, path)
        names += [f"{path}:{name}" for name in found.names]

    def new_session(folder: Path) -> EditorSession:
        return EditorSession(loaded, spec, folder, faces, sampling, device)

    typer.echo(f"diffedit editor on http://{host}:{port} (Ctrl-C stops it); renders go to {out}/", err=True)
    launch(new_session, list(loaded.component("classifier").attributes), num_levels(loaded.autoencoder), out.resolve(),
           host, port, directions=names, photos=faces is not None)
