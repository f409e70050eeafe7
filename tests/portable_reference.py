"""Make an export and MXNet's own figures for it, for tests/test_portable.py (which may run where MXNet is not).

    python tests/portable_reference.py DATA_FOLDER OUT_FOLDER

trains a tiny LSTM with ptb_lm on DATA_FOLDER, exports it to OUT_FOLDER/export, and writes
OUT_FOLDER/reference.json: what ptb-lm-evaluate and ptb-lm-generate (MXNet) print for it.
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = "w01 w02 w03 w04\nw05 w06 zzz w07\n" * 6  # one word outside the vocabulary, twice


def cli(script, *args):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script)] + list(args), cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit("%s failed: %s" % (script, out.stderr))
    return out.stdout


def make(data, folder):
    run, export = os.path.join(folder, "run"), os.path.join(folder, "export")
    cli("train.py", "--data", data, "--mode", "lstm", "--embed-dim", "12", "--hidden-dim", "12", "--batch-size", "4",
        "--num-steps", "5", "--epochs", "1", "--seed", "2", "--ctx", "cpu", "--progress", "none", "--save-dir", run)
    cli("export.py", run, "--out", export, "--data", data)
    text = os.path.join(folder, "text.txt")
    with open(text, "w") as f:
        f.write(TEXT)
    evaluated = cli("evaluate.py", run, "--text", text, "--batch-size", "2", "--num-steps", "3", "--ctx", "cpu")
    generated = cli("generate.py", run, "--words", "30", "--seed", "5", "--temperature", "0.9", "--prompt",
                    "w02 w03", "--ctx", "cpu")
    reference = {"text": text, "loss": evaluated.split("(loss ")[1].split(")")[0], "batch_size": 2, "num_steps": 3,
                 "unknown": int(evaluated.split(" unknown")[0].split("; ")[-1]), "generated": generated,
                 "generate": ["--words", "30", "--seed", "5", "--temperature", "0.9", "--prompt", "w02 w03"]}
    with open(os.path.join(folder, "reference.json"), "w") as f:
        json.dump(reference, f, indent=2)
    return export, reference


if __name__ == "__main__":
    make(sys.argv[1], sys.argv[2])
