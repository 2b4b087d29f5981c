"""A SavedModel with a ScaNN index (Scann>* ops) loads in a fresh server process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

LOAD_AND_PREDICT = """
import json, sys
import tfrs_multiscene
from tfrs_multiscene.serving.signatures import LoadedModel
model = LoadedModel("scann", 1, sys.argv[1])
_, out = model.predict(None, {"query": [[0.1] * 8]})
print(json.dumps({"ops": model.custom_ops, "ids": [v.decode() for v in out["item_ids"][0]],
                  "tfrs_imported": "tensorflow_recommenders" in sys.modules}))
"""


@pytest.mark.serving
def test_scann_savedmodel_loads_in_a_fresh_process(tmp_path):
    import tensorflow_recommenders as tfrs

    rng = np.random.default_rng(0)
    index = tfrs.layers.factorized_top_k.ScaNN(k=5, num_leaves=10, num_leaves_to_search=5,
                                               num_reordering_candidates=20)
    index.index(tf.constant(rng.normal(size=(300, 8)).astype("float32")),
                tf.constant([f"item{i}" for i in range(300)]))

    class Retrieval(tf.Module):
        def __init__(self):
            super().__init__()
            self.index = index

        @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32, name="query")])
        def serve(self, query):
            scores, ids = self.index(query)
            return {"scores": scores, "item_ids": ids}

    module = Retrieval()
    module.serve(tf.zeros([1, 8]))  # call the index once before saving
    export = tmp_path / "scann" / "1"
    tf.saved_model.save(module, str(export), signatures={"serving_default": module.serve},
                        options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]))

    proc = subprocess.run([sys.executable, "-c", LOAD_AND_PREDICT, str(export)], capture_output=True, text=True, check=False,
                          timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert any(op.startswith("Scann>") for op in result["ops"])
    assert len(result["ids"]) == 5 and all(i.startswith("item") for i in result["ids"])
    assert result["tfrs_imported"] is False  # the server needs only the op libraries
