"""genrekit serve: the HTTP API and web page (see docs/service.md)."""
from ._common import positive_float, positive_int

HELP = "serve predictions over HTTP: a JSON API (/v1/predict, /v1/model) and a web page at /"


def add_arguments(p):
    p.add_argument("--model", help="model file (.onnx) or training checkpoint (default: the model shipped with genrekit)")
    p.add_argument("--runtime", default="auto", choices=["auto", "onnx", "torch"],
                   help="what runs the model: onnxruntime, PyTorch, or auto (onnx on CPU; default)")
    p.add_argument("--min-confidence", type=probability, metavar="P",
                   help="answer 'uncertain' when the top probability is below P (default: the model's own)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=port_number, default=8000, metavar="PORT", help="port (default 8000; 0 picks a free one)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (PyTorch runtime)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    g = p.add_argument_group("limits (see docs/service.md)")
    g.add_argument("--max-upload-mb", type=positive_float, default=50.0, metavar="MB",
                   help="largest accepted upload in MiB; larger ones get 413 (default 50)")
    g.add_argument("--max-duration", type=positive_float, default=600.0, metavar="SECONDS",
                   help="longest accepted audio in seconds; longer gets 413 (default 600)")
    g.add_argument("--workers-threads", type=positive_int, metavar="N",
                   help="files processed at once, each in a worker thread (default 2, 1 on one core)")
    g.add_argument("--max-queue", type=positive_int, default=32, metavar="N",
                   help="requests uploading or waiting for a worker, together; more get 503 (default 32)")
    g.add_argument("--max-uploads", type=positive_int, default=16, metavar="N",
                   help="uploads in progress at once; more get 503 (default 16)")
    g.add_argument("--max-temp-mb", type=positive_float, default=512.0, metavar="MB",
                   help="disk space for uploads in progress, all together, in MiB; beyond it 503 (default 512)")
    g.add_argument("--upload-timeout", type=positive_float, default=120.0, metavar="SECONDS",
                   help="longest time to receive one upload; then 408 (default 120)")
    g.add_argument("--upload-idle-timeout", type=positive_float, default=20.0, metavar="SECONDS",
                   help="longest pause in an upload; then 408 (default 20)")


def port_number(text: str) -> int:
    import argparse

    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port, 0-65535, not {text}")
    return value


def probability(text: str) -> float:
    import argparse

    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be within 0-1, not {text}")
    return value


def model_threads(workers: int) -> int:
    """Intra-op threads per model run so that all workers together use the cores this process may use."""
    from ..runtime import available_cores

    return max(1, available_cores() // workers)


def run(args) -> int:
    from ..service.app import create_app
    from ..service.limits import ServiceLimits
    from ..service.server import run_server

    limits = ServiceLimits(max_upload_mb=args.max_upload_mb, max_duration_s=args.max_duration,
                           concurrency=args.workers_threads, max_queue=args.max_queue, max_uploads=args.max_uploads,
                           max_temp_mb=args.max_temp_mb, upload_timeout_s=args.upload_timeout,
                           upload_idle_s=args.upload_idle_timeout)
    app = create_app(args.model, limits, device=args.device, runtime=args.runtime,
                     min_confidence=args.min_confidence, threads=model_threads(limits.concurrency))
    model = app.state.settings.model
    print(f"genrekit serve: model {model.model_id} ({model.runtime}), {limits.concurrency} worker thread(s), "
          f"uploads <= {limits.max_upload_mb:g} MB ({limits.max_uploads} at once, {limits.max_temp_mb:g} MB "
          f"on disk), audio <= {limits.max_duration_s:g} s", flush=True)
    run_server(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
