"""A stand-in for a user's train-and-validate command (evaluate=command tests): it "trains" on a YOLO dataset
by counting its boxes and reports boxes / 100 as its score.

usage: python scorer.py DATA_YAML JSON_OUT|- [--fail STATUS]
"""
import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    data_yaml, json_out = Path(argv[0]), argv[1]
    if "--fail" in argv:
        print("scorer: giving up", flush=True)
        return int(argv[argv.index("--fail") + 1])
    boxes = sum(len(p.read_text().splitlines()) for p in (data_yaml.parent / "labels").rglob("*.txt"))
    print(f"epoch 1/1: trained on {boxes} boxes")
    if json_out != "-":
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps({"metrics": {"map50": boxes / 100}}))
    print(f"map50 {boxes / 100}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
