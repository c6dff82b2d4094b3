"""The browser editor, a front end beside the command line: :mod:`.session` (an editing session: input, settings,
renders and the ``diffedit edit`` command that reproduces them; no gradio) and :mod:`.app` (the Gradio page, the
``[ui]`` extra). Importing this package imports neither."""
