"""``xbyol serve``: a local web explorer of a run."""

from __future__ import annotations

import argparse
import ipaddress
import sys

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="browse a run in a local web explorer",
        description=(
            "Serve a small web explorer of RUN_DIR: browse the test images, type any concept text and see each "
            "explainer's heatmap for it, see an image's top concepts, upload an image and do the same. Bound to "
            "127.0.0.1 by default (only this machine can connect)."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; ::1 for the IPv6 loopback)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--methods", metavar="A,B,...",
                   help="methods ticked by default (default gradcam,gradcampp,scorecam,integrated_gradients)")
    p.add_argument("--max-upload-mb", type=float, default=5.0, metavar="MB", help="upload size limit (default 5)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported on use, not at the top: see xbyol.commands (--help must not load torch)
    from xbyol.web import LOCAL_HOSTS, create_app

    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    if args.max_upload_mb <= 0:
        raise ValueError(f"--max-upload-mb must be > 0, got {args.max_upload_mb}")
    local = is_loopback(args.host)
    if not local:
        print(f"xbyol serve: warning: binding {args.host} exposes the explorer (and the model) to other machines; "
              "it has no authentication", file=sys.stderr)
    methods = args.methods.split(",") if args.methods else None
    app = create_app(args.run_dir, methods=methods, device=args.device,
                     max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
                     trusted_hosts=LOCAL_HOSTS if local else None)
    shown = f"[{args.host.strip('[]')}]" if ":" in args.host else args.host  # an IPv6 address in a URL has brackets
    print(f"xbyol explorer of {args.run_dir}: http://{shown}:{args.port}/  (Ctrl+C to stop)")
    app.run(host=args.host.strip("[]"), port=args.port, debug=False, use_reloader=False, threaded=True)
    return 0
