"""genrekit card: what a model is (labels, features, training data, CV figures, abstention)."""

from ._common import prior_line, zero_shot_line

HELP = "show a model's card: labels, features, what it was trained on, its CV figures (shipped model by default)"


def add_arguments(p):
    p.add_argument("model", nargs="?", help="model file (.onnx) or training checkpoint (.safetensors); "
                   "default: the model shipped with genrekit")
    p.add_argument("--format", choices=["text", "json"], default="text")


def run(args) -> int:
    import json

    from ..prediction import load_model

    card = load_model(args.model).card
    print(json.dumps(card, indent=2, default=str) if args.format == "json" else "\n".join(card_lines(card)))
    return 0


def card_lines(card: dict) -> list[str]:
    """The card as a few lines for people; ``--format json`` has all of it."""
    names = card.get("display_names") or {}
    lines = [f"model {card['model_id']} ({card.get('kind')}, {card.get('runtime')}): {card.get('source')}",
             "labels: " + ", ".join(f"{g} ({names[g]})" if names.get(g, g) != g else g for g in card["labels"])]
    features = card.get("feature_config") or {}
    networks = ", ".join(card.get("networks") or []) or card.get("model_config", {}).get("backbone", "?")
    lines.append(f"features: {features.get('frontend', '?')} at {features.get('sr', '?')} Hz, "
                 f"{features.get('segment_seconds', '?')} s segments; network: {networks}")
    data = card.get("training_data") or {}
    if data.get("per_label"):
        counts = ", ".join(f"{g} {n}" for g, n in data["per_label"].items())
        lines.append(f"trained on {data.get('n_tracks', '?')} tracks ({counts}); from {'; '.join(data.get('sources', []))}")
    cv = card.get("cv_metrics") or {}
    if cv.get("balanced_accuracy") is not None:
        lines.append(f"CV ({cv.get('n_tracks', '?')} tracks, {cv.get('folds', '?')} artist-grouped folds): "
                     + ", ".join(f"{name} {cv[key]:.3f} [{cv[key + '_ci'][0]:.2f}-{cv[key + '_ci'][1]:.2f}]"
                                 for name, key in (("balanced accuracy", "balanced_accuracy"), ("macro-F1", "macro_f1"),
                                                   ("accuracy", "accuracy")) if cv.get(key + "_ci")))
        lines.append("CV recall (tracks): " + ", ".join(
            f"{g} {m['recall']:.2f} ({m['support']})" for g, m in cv.get("per_class", {}).items()
            if m.get("recall") is not None))
    prior = card.get("tag_prior")
    if prior:
        lines.append(prior_line(prior["genre_tags"], prior["scale"], hint=False))
    if card.get("labels_without_tracks"):
        lines.append(zero_shot_line(card["labels_without_tracks"]))
    detector = card.get("detector_metrics") or {}
    if detector.get("not_music_detected") is not None:
        lines.append(f"not music, CV: detects {detector['not_music_detected']:.3f} of {detector['n_not_music']} "
                     f"generated clips, false alarms on {detector['music_false_alarms']:.3f} of "
                     f"{detector['n_music']} music tracks")
    rules = card.get("abstention") or {}
    threshold = rules.get("not_music_threshold")
    lines.append(f"abstains: 'uncertain' below confidence {rules.get('min_confidence', 0):g}; "
                 + (f"'not music' when P(not music) > {threshold:.3f}" if threshold is not None
                    else "no not-music detector"))
    return lines
