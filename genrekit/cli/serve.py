"""genrekit serve: the HTTP API and web page (see docs/service.md)."""
from ._common import positive_float, positive_int

HELP = "serve predictions over HTTP: a JSON API (/v1/predict, /v1/model) and a web page at /"


def add_arguments(p):
    p.add_argument("--model", help="checkpoint (.pt) or exported .onnx (default: the model shipped with genrekit)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=8000, metavar="PORT", help="port (default 8000; 0 picks a free one)")
    p.add_argument("--max-upload-mb", type=positive_float, default=50.0, metavar="MB",
                   help="largest accepted upload in MiB; larger ones get 413 (default 50)")
    p.add_argument("--max-duration", type=positive_float, default=600.0, metavar="SECONDS",
                   help="longest accepted audio in seconds; longer gets 413 (default 600)")
    p.add_argument("--workers-threads", type=positive_int, metavar="N",
                   help="files processed at once, each in a worker thread (default 2, 1 on one core)")
    p.add_argument("--max-queue", type=non_negative_int, default=32, metavar="N",
                   help="requests that may wait for a worker; more get 503 (default 32)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def non_negative_int(text: str) -> int:
    import argparse

    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return value


def torch_threads(workers: int) -> int:
    """Intra-op threads per worker so that all workers together use the machine's cores."""
    import os

    return max(1, (os.cpu_count() or 1) // workers)


def run(args) -> int:
    import torch
    import uvicorn

    from ..service.app import create_app, default_concurrency

    workers = args.workers_threads or default_concurrency()
    torch.set_num_threads(torch_threads(workers))
    app = create_app(args.model, max_upload_mb=args.max_upload_mb, max_duration_s=args.max_duration,
                     concurrency=workers, max_queue=args.max_queue, device=args.device)
    print(f"genrekit serve: model {app.state.settings.model.model_id}, {workers} worker thread(s), "
          f"uploads <= {args.max_upload_mb:g} MB, audio <= {args.max_duration:g} s", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=10)
    return 0
