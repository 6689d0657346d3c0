"""genrekit export: checkpoint → ONNX."""
HELP = "export a checkpoint to ONNX (metadata included) for onnxruntime"


def add_arguments(p):
    p.add_argument("checkpoint", help="training checkpoint (.safetensors, from genrekit train; a legacy .pt works too)")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--out", help="output file (default: CHECKPOINT with .onnx)")


def run(args) -> int:
    from pathlib import Path

    from ..export import export_onnx

    out = Path(args.out) if args.out else Path(args.checkpoint).with_suffix(".onnx")
    export_onnx(args.checkpoint, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0
