"""Screen transfer-task levers on the embedded default (Gemma 3 270M + the Bible).

    OMP_NUM_THREADS=1 python benchmarks/transfer_task_levers.py probe --labels genres testaments
    OMP_NUM_THREADS=1 python benchmarks/transfer_task_levers.py classifier --labels styles

``probe`` is the cheap screen: the frozen model's final normalised hidden state at the last
token (what the job's classifier head reads) is computed once per verse and language,
and a linear head is fitted on the source rows only (logistic regression, full batch).
``classifier`` runs the job's own classifier (`finetune_classifier`: attention LoRA +
head). Both print source and target accuracy with 95 % bootstrap intervals
(`lsn_mech.intervals.proportion` over test rows) and seconds, and append one record per
lever to ``--json`` (a lever already there is skipped, so a stopped run resumes).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

LABEL_SETS = ("genres", "styles", "testaments")  # lsn_mech.corpora.BIBLE_LABEL_SETS

TEMPLATES = {
    "none": "{text}",
    "book": "{text}\n\nThe passage above is from the Bible book of",
}


def build_task(args: argparse.Namespace, labels: str, context: int) -> Any:
    import lsn_mech as lm

    count = len(set(lm.corpora.BIBLE_LABEL_SETS[labels].values()))
    return lm.corpora.bible_genre_task(
        args.source,
        args.targets,
        train_per_genre=args.train_items // count,
        test_per_genre=-(-args.test_items // count),
        seed=0,
        genres=labels,
        context_verses=context,
    )


def interval(correct: torch.Tensor) -> dict[str, float]:
    from lsn_mech.intervals import proportion

    estimate = proportion(correct)
    return {"accuracy": estimate.value, "low": estimate.low, "high": estimate.high}


@torch.no_grad()
def features(hf: Any, tokenizer: Any, texts: list[str], max_length: int) -> torch.Tensor:
    from lsn_mech.training.classifier import decoder_hidden, pool_last, tokenize

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.zeros(len(texts), hf.config.hidden_size)
    for start in range(0, len(texts), 16):
        chunk = order[start : start + 16]
        batch = tokenize(tokenizer, [texts[i] for i in chunk], max_length, torch.device("cpu"))
        hidden = decoder_hidden(hf, batch["input_ids"], batch["attention_mask"])
        out[chunk] = pool_last(hidden, batch["attention_mask"]).float()
    return out


def fit_probe(x: torch.Tensor, y: torch.Tensor, classes: int) -> tuple[torch.Tensor, Any]:
    mean, std = x.mean(0), x.std(0) + 1e-6
    head = torch.nn.Linear(x.shape[1], classes)
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=200, line_search_fn="strong_wolfe")
    z = (x - mean) / std

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(z), y) + 1e-2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return mean, (std, head)


def run_probe(args: argparse.Namespace, model: Any, key: dict[str, Any]) -> dict[str, Any]:
    from lsn_mech.models.hf import plain_hf_model

    hf = plain_hf_model(model, copy=False)
    task = build_task(args, key["labels"], key["context"])
    template = TEMPLATES[key["template"]]
    frame = [template.format(text=t) for t in task.train["text"]]
    x = features(hf, model.tokenizer, frame, args.max_length)
    y = torch.tensor(task.train["label"])
    mean, (std, head) = fit_probe(x, y, task.num_labels)
    result: dict[str, Any] = {"chance": 1 / task.num_labels, "train_rows": len(y)}
    for language, rows in task.test.items():
        framed = [template.format(text=t) for t in rows["text"]]
        z = (features(hf, model.tokenizer, framed, args.max_length) - mean) / std
        with torch.no_grad():
            correct = head(z).argmax(-1) == torch.tensor(rows["label"])
        result[language] = {**interval(correct), "n": len(rows)}
    return result


def run_classifier(args: argparse.Namespace, model: Any, key: dict[str, Any]) -> dict[str, Any]:
    from lsn_mech.training import ClassifierConfig, finetune_classifier

    task = build_task(args, key["labels"], key["context"])
    config = ClassifierConfig(
        epochs=key["epochs"],
        batch_size=8,
        max_length=args.max_length,
        template=TEMPLATES[key["template"]],
        lr=key["lr"],
    )
    started = time.perf_counter()
    classifier = finetune_classifier(model, task, config=config, progress=False)
    result: dict[str, Any] = {
        "chance": 1 / task.num_labels,
        "train_rows": len(task.train),
        "steps": classifier.record.steps,
        "train_s": round(time.perf_counter() - started, 1),
        "last_losses": classifier.record.losses[-5:],
    }
    for language, rows in task.test.items():
        mark = time.perf_counter()
        predicted = classifier.predict(rows, batch_size=16).cpu()
        correct = predicted == torch.tensor(rows["label"])
        result[language] = {
            **interval(correct),
            "n": len(rows),
            "seconds": round(time.perf_counter() - mark, 1),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("mode", choices=("probe", "classifier"))
    parser.add_argument("--labels", nargs="+", default=["genres"], choices=LABEL_SETS)
    parser.add_argument("--context", nargs="+", type=int, default=[1])
    parser.add_argument("--template", nargs="+", default=["none"], choices=list(TEMPLATES))
    parser.add_argument("--epochs", nargs="+", type=float, default=[2.0])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--source", default="en")
    parser.add_argument("--targets", nargs="+", default=["vi", "zh"])
    parser.add_argument("--train-items", type=int, default=360)
    parser.add_argument("--test-items", type=int, default=300)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/transfer_levers.json")
    )
    args = parser.parse_args()

    import lsn_mech as lm

    records: list[dict[str, Any]] = json.loads(args.json.read_text()) if args.json.exists() else []
    done = [r["lever"] for r in records]
    model = lm.load_model("gemma-3-270m")
    for labels in args.labels:
        for context in args.context:
            for template in args.template:
                for epochs in args.epochs if args.mode == "classifier" else [0.0]:
                    key = {
                        "mode": args.mode,
                        "labels": labels,
                        "context": context,
                        "template": template,
                        "epochs": epochs,
                        "lr": args.lr if args.mode == "classifier" else 0.0,
                        "train_items": args.train_items,
                        "test_items": args.test_items,
                        "max_length": args.max_length,
                        "targets": list(args.targets),
                    }
                    if key in done:
                        continue
                    started = time.perf_counter()
                    run = run_probe if args.mode == "probe" else run_classifier
                    result = run(args, model, key)
                    seconds = round(time.perf_counter() - started, 1)
                    record = {
                        "lever": key,
                        "result": result,
                        "seconds": seconds,
                        "threads": torch.get_num_threads(),
                    }
                    records.append(record)
                    args.json.parent.mkdir(parents=True, exist_ok=True)
                    args.json.write_text(json.dumps(records, indent=1))
                    cells = "  ".join(
                        f"{lang} {r['accuracy']:.1%} [{r['low']:.1%}, {r['high']:.1%}]"
                        for lang, r in result.items()
                        if isinstance(r, dict) and "accuracy" in r
                    )
                    print(f"{key} chance {result['chance']:.1%}: {cells} ({seconds} s)", flush=True)


if __name__ == "__main__":
    main()
