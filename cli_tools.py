"""The CLI's tool commands: `vaectl doctor` (what this machine can do) and `vaectl explore` (the browser
explorer's local server or static site). Base install only; cli.py registers COMMANDS on the `vaectl` group.
"""

from __future__ import annotations

import sys

import click

from .cli_common import (
    ANY_PATH,
    DIR_PATH,
    MODEL_HELP,
    decoder_option,
    encoder_option,
    flag_name,
    handle_errors,
    model_argument,
    wrote,
)

# ----------------------------------------------------------------------------- doctor


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@click.option("--no-smoke", is_flag=True, help="Versions, devices and install checks only (no training run).")
@handle_errors
def doctor(as_json, no_smoke):
    """What this machine can do with vaectl: versions, devices, and a short train -> export -> generate run
    on each device. Exits 0 when every check that applies passed, 1 otherwise."""
    import json

    from .doctor import format_report, run_doctor

    report = run_doctor(smoke=not no_smoke, progress=lambda m: click.echo(m, err=True))
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_report(report))
    sys.exit(0 if report.ok else 1)


# ----------------------------------------------------------------------------- explore
@click.command(epilog=MODEL_HELP)
@model_argument()
@decoder_option("decoder.onnx, instead of MODEL.")
@encoder_option("encoder.onnx, for the map and your own images [MODEL's].")
@click.option(
    "--data",
    "data_dir",
    type=ANY_PATH,
    default=None,
    help="IDX or image folder for the latent map [the embedded mnist-sample].",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 serves other machines too."
)
@click.option("--port", type=int, default=0, show_default=True, help="Port; 0 picks a free one.")
@click.option("--no-browser", is_flag=True, help="Print the URL, do not open a browser.")
@click.option(
    "--site",
    "out_dir",
    type=DIR_PATH,
    default=None,
    help="Write the page as a static folder (for any static host) instead of serving it.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="With --site: replace the static site already in that folder (deletes its files, nothing else).",
)
@handle_errors
def explore(model, decoder, encoder, data_dir, host, port, no_browser, out_dir, overwrite):
    """Explore a model's latent space in the browser: sliders, a 2-D pad, the latent map, samples, paths.

    MODEL is what `vaectl export` wrote (or a run directory holding an export). The graphs run in the
    page (onnxruntime-web); this process only serves files and small JSON. No MODEL: the demo model.
    """
    from .errors import UserInputError
    from .explore import load_explore_model, make_server, server_url, write_site

    if model is None and decoder is None:
        try:
            from .demo import demo_dir
        except ImportError:
            raise UserInputError("no demo model in this install: give an export directory or --decoder") from None
        model = demo_dir()
    if overwrite and out_dir is None:
        raise UserInputError("--overwrite goes with --site (the server writes no files)")
    if not 0 <= port <= 65535:
        raise UserInputError(f"--port must be 0..65535, got {port}")
    explored = load_explore_model(model, decoder, encoder, data_dir, flag_name)
    if out_dir is not None:
        written = write_site(explored, out_dir, overwrite=overwrite)
        wrote(f"a static site ({len(written)} files; serve it over http, .mjs as text/javascript)", out_dir)
        import shlex

        click.echo(  # opened from disk (file://), the browser refuses its modules: the page stays on "loading"
            f"next: python3 -m http.server -d {shlex.quote(str(out_dir))}, then open http://localhost:8000/ "
            "(not the index.html file itself)",
            err=True,
        )
        return
    server = make_server(explored, host, port)
    url = server_url(server)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}: other machines on the network can open this page", err=True)
    click.echo(f"vaectl explore: {url}  (Ctrl-C stops)")
    if not no_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
        sys.exit(130)
    finally:
        server.server_close()


COMMANDS = (doctor, explore)
