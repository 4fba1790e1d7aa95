"""models/ and pretrained/ import without TensorFlow (and without torch, which stays lazy)."""

import subprocess
import sys

CODE = """
import sys
import universal_embedding.models
import universal_embedding.models.embedding_model
import universal_embedding.pretrained
import universal_embedding.pretrained.hf
heavy = sorted(m for m in ("tensorflow", "torch", "transformers") if m in sys.modules)
assert not heavy, heavy
print("ok")
"""


def test_models_and_pretrained_import_without_tensorflow_or_torch():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
