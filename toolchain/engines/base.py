"""The engine interface every backend implements, and what the backends share.

An engine takes a padded batch (``input_ids``, ``attention_mask`` and, for models that use them,
``token_type_ids``, as int64 numpy arrays) and returns the outputs of its model head
(:class:`kdtool.models.heads.Head`) as a tuple of float32 numpy arrays: ``(start_logits, end_logits)``
for question answering, ``(logits,)`` for pair classification. Tokenization and post-processing are
shared (:mod:`kdtool.predict`), so every backend answers through exactly the same code path.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from kdtool.bundle.arithmetic import this_machine
from kdtool.bundle.selftest import SelfTest, SelfTestResult, compare, parse_self_test
from kdtool.bundle.verified import VerifiedBundle, check_tokenizer_fits, open_verified_bundle
from kdtool.errors import IntegrityError
from kdtool.models import MODEL_INPUTS, dir_size_bytes, load_tokenizer


class QAEngine:
    """Base class of all engines. Subclasses set the attributes and implement :meth:`run`."""

    name: str = ""
    path: Path
    kind: str = ""  # "pytorch", "onnxruntime", "tensorrt"
    tokenizer = None
    input_names: tuple[str, ...] = MODEL_INPUTS[:2]
    max_length: int | None = None  # the longest window this engine accepts (None: model limit)
    device: str = "cpu"

    def run(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op for synchronous backends); used by the profiler."""

    def num_parameters(self) -> int | None:
        return None

    def size_bytes(self) -> int:
        return dir_size_bytes(self.path)

    def describe(self) -> dict:
        return {"name": self.name, "path": str(self.path), "kind": self.kind, "device": self.device,
                "parameters": self.num_parameters(), "size_bytes": self.size_bytes()}

    def close(self) -> None:
        pass


def tokenizer_inputs(tokenizer) -> tuple[str, ...]:
    """The model inputs ``tokenizer`` produces, in the order models take them."""
    accepted = set(tokenizer.model_input_names) | set(MODEL_INPUTS[:2])
    return tuple(n for n in MODEL_INPUTS if n in accepted)


def input_feed(batch: dict[str, np.ndarray], names, dtypes: dict | None = None) -> dict[str, np.ndarray]:
    """THE feed of a graph (ONNX Runtime) or engine (TensorRT) with inputs ``names``: each a contiguous
    array of its dtype (int64 unless ``dtypes`` says otherwise); an input the batch lacks
    (``token_type_ids`` of a tokenizer without them) is zeros shaped like ``input_ids``."""
    dtypes = dtypes or {}
    return {n: np.ascontiguousarray(batch[n] if n in batch else np.zeros_like(batch["input_ids"]),
                                    dtype=dtypes.get(n, np.int64))
            for n in names}


def verified(path, bundle) -> VerifiedBundle:
    """``bundle`` when it is already a VerifiedBundle; otherwise the bundle at ``path``, read and verified now."""
    return bundle if isinstance(bundle, VerifiedBundle) else open_verified_bundle(path)


class BundleEngine(QAEngine):
    """What the engines of a kdtool bundle share: the verified bytes, the tokenizer, the manifest, the self-test."""

    graph_member: str = ""  # the bundle file this engine runs (its self-test compares against that graph's logits)
    providers: tuple[str, ...] | list[str] = ()
    self_test_data: SelfTest | None = None

    def _init_common(self, path: Path, bundle) -> None:
        self.verified = verified(path, bundle)
        self.path, self.manifest = Path(path), self.verified.manifest
        self.name = self.path.name
        self.max_length = self.manifest.get("max_seq_length")
        rel = (self.manifest.get("self_test") or {}).get("file")
        if rel is not None:  # covered by the checksums and the signature like every member
            if not isinstance(rel, str) or rel not in self.verified.data:
                raise IntegrityError(f"bundle {self.path}: manifest.json names self-test {rel!r} but does not list it; "
                                     "export the bundle again")
            self.self_test_data = parse_self_test(self.verified.member(rel), f"bundle {self.path}")
        with self.verified.private_copy(self.verified.tokenizer_files()) as copy:  # the verified bytes, not the path
            self.tokenizer = load_tokenizer(copy)
        if "config.json" in self.verified.data:
            try:
                config = json.loads(self.verified.member("config.json"))
            except ValueError:
                raise IntegrityError(f"bundle {self.path}: config.json is not valid JSON; export the bundle again") from None
            check_tokenizer_fits(self.tokenizer, config if isinstance(config, dict) else {}, f"bundle {self.path}")

    def num_parameters(self) -> int | None:
        return self.manifest.get("num_parameters")

    def _release_bytes(self) -> None:
        """Drop the verified file bytes once the backend holds its own copy: a bundle is not kept twice in memory."""
        self.verified = replace(self.verified, data={})

    def describe(self) -> dict:
        d = super().describe()
        d.update(precision=self.manifest.get("precision"), bundle_schema=self.manifest.get("schema_version"),
                 signed_by=self.verified.signed_by)
        return d

    def self_test(self) -> SelfTestResult | None:
        """Run the bundle's golden windows through this engine and compare with the logits it was certified with.

        None when the bundle carries no self-test for the graph this engine runs (bundles exported before it).
        """
        test = self.self_test_data
        if test is None or self.graph_member not in test.graphs:
            return None
        batch = dict(test.inputs)
        got = self.run(batch)
        worst, agreement, bound = compare(test, self.graph_member, self.device, got)
        machine = {"gpu": self.gpu_name()} if self.device.startswith("cuda") else this_machine().to_dict()
        return SelfTestResult(passed=bool(worst <= bound), max_abs_logit_diff=worst, argmax_agreement=agreement,
                              bound=bound, graph=self.graph_member, device=self.device, engine=self.kind,
                              providers=tuple(self.providers), windows=len(batch["input_ids"]), machine=machine,
                              made_on=test.made_on)

    def gpu_name(self) -> str:
        return "CUDA GPU"
