"""File-level runs behind the CLI: inputs (:mod:`.inputs`) -> the job loop (:mod:`.runner`) -> outputs, with per-file
failures and reporting (:mod:`.report`), run options (:mod:`.options`); the jobs themselves: encode / decode / edit
(:mod:`.filejobs`), interpolation and sampling (:mod:`.generate`), real photos with alignment and paste-back
(:mod:`.photos`), style mixing (:mod:`.stylemix`), GAE swap / recombine (:mod:`.swapping`) and direction files
(:mod:`.directions`). The names a Python caller needs are importable from here."""

from .filejobs import decode_files, edit_files, encode_files
from .generate import interpolate_pair, sample_images
from .options import RunOptions
from .report import Reporter

__all__ = ["Reporter", "RunOptions", "decode_files", "edit_files", "encode_files", "interpolate_pair", "sample_images"]
