"""What the Python-backend models of a ``kdtool triton`` repository do, one class per role.

Each model's ``model.py`` (:mod:`kdtool.deploy.python_model_entry`, copied verbatim) reads the role
from its ``parameters`` and hands every call to the class below; ``triton_python_backend_utils``
exists only inside Triton's Python stub, so it is imported there, never at module level.

* ``qa`` (the ``python`` layout): opens the bundle with :func:`kdtool.engines.load_engine` (checksums,
  the signature with ``require_signature``, and whatever else opening a bundle checks) in
  ``initialize``: if that raises, Triton marks the model not ready. ``execute`` answers the questions of
  every request of the call in one :func:`kdtool.predict.predict` (the same features, batches and
  post-processing as ``kdtool answer``) and splits the answers back per request.
* ``tokenizer``, ``encoder``, ``decoder`` (the ``ensemble`` layout): kdtool's windows, the graph, and
  kdtool's span decoding. The tokenizer verifies the bundle and the encoder's model file against the
  manifest before it is ready, so a tampered repository never answers.

A request with bad text (not UTF-8, an empty question) gets an error response naming the row; the
other requests of the call are answered.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from kdtool.data import Example, FeatureConfig, PostprocessConfig, QAFeatures, postprocess, tokenize_examples
from kdtool.deploy.pbtxt import ONNX_TO_OIP
from kdtool.deploy.triton_configs import WINDOW_OFFSETS, WINDOW_QUESTION
from kdtool.errors import InputError, IntegrityError
from kdtool.questions import question_from_row
from kdtool.serve.oip import NUMPY_DTYPES, OUTPUTS

NO_SPAN = -1  # window_offsets of a token outside the context


def _pb():
    import triton_python_backend_utils as pb_utils  # only inside Triton's Python backend stub

    return pb_utils


def model_parameters(model_config: dict) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in (model_config.get("parameters") or {}).items()}


def _version_dir(args: dict) -> Path:
    return Path(args["model_repository"]) / str(args["model_version"])


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text else None


def _texts(pb, request, name: str) -> list[str]:
    array = pb.get_input_tensor_by_name(request, name).as_numpy().reshape(-1)
    out = []
    for row, value in enumerate(array):
        try:
            out.append(value.decode("utf-8") if isinstance(value, bytes) else str(value))
        except UnicodeDecodeError:
            raise InputError(f"input {name!r} row {row} is not UTF-8 text; send UTF-8") from None
    return out


def request_examples(pb, request, prefix: str) -> list[Example]:
    """The questions of one request, checked as ``kdtool answer`` checks a JSONL line; ids ``prefix.row``."""
    questions, contexts = _texts(pb, request, "question"), _texts(pb, request, "context")
    if len(questions) != len(contexts):
        raise InputError(f"inputs 'question' ({len(questions)} rows) and 'context' ({len(contexts)} rows) differ in "
                         "length; send one context per question")
    return [question_from_row({"question": q, "context": c}, f"input row {i}", f"{prefix}.{i}")[0]
            for i, (q, c) in enumerate(zip(questions, contexts, strict=True))]


def oip_columns(rows: list[dict]) -> dict[str, np.ndarray]:
    """``kdtool answer``'s answer rows (``answer``, ``start``, ``end``, ``score``) as the OIP output tensors [B, 1]."""
    def cell(value, datatype):
        if datatype == "BYTES":
            return str(value).encode("utf-8")
        return np.nan if value is None else value

    return {name: np.array([cell(r[name], dt) for r in rows], dtype=NUMPY_DTYPES[dt]).reshape(-1, 1)
            for name, dt in OUTPUTS}


def _response(pb, tensors: dict[str, np.ndarray]):
    return pb.InferenceResponse(output_tensors=[pb.Tensor(name, value) for name, value in tensors.items()])


def _error(pb, err: Exception):
    return pb.InferenceResponse(output_tensors=[], error=pb.TritonError(str(err)))


class QAModel:
    """The ``python`` layout: text in, text out, through kdtool's verified engine."""

    def __init__(self, args: dict, params: dict[str, str]):
        from kdtool.engines import load_engine
        from kdtool.predict import PredictConfig

        self.engine = load_engine(_version_dir(args) / params["bundle"], device=params.get("device") or "cpu",
                                  threads=_int_or_none(params.get("threads")),
                                  require_signature=params.get("require_signature") or None,
                                  self_test=True)  # the device check: a bundle that fails it never becomes ready
        self.config = PredictConfig(postprocess=PostprocessConfig(max_answer_length=int(params.get("max_answer_length") or 30)),
                                    batch_size=int(params.get("batch_size") or 16))

    def execute(self, requests):
        from kdtool.predict import predict

        pb = _pb()
        parsed: list[list[Example] | InputError] = []
        for r, request in enumerate(requests):
            try:
                parsed.append(request_examples(pb, request, str(r)))
            except InputError as err:
                parsed.append(err)
        examples = [ex for p in parsed if isinstance(p, list) for ex in p]
        preds = predict(self.engine, examples, self.config) if examples else {}  # one call: all requests batched
        return [_error(pb, p) if isinstance(p, InputError)
                else _response(pb, oip_columns([preds[ex.id].to_dict() for ex in p])) for p in parsed]

    def finalize(self):
        self.engine.close()


def _load_tokenizer(bundle):
    import json

    from kdtool.bundle.verified import check_tokenizer_fits
    from kdtool.models import load_tokenizer

    with bundle.private_copy(bundle.tokenizer_files()) as copy:
        tokenizer = load_tokenizer(copy)
    config = json.loads(bundle.member("config.json")) if "config.json" in bundle.data else {}
    check_tokenizer_fits(tokenizer, config if isinstance(config, dict) else {}, f"bundle {bundle.root}")
    return tokenizer


def check_encoder_file(path: Path, manifest: dict, member: str) -> None:
    """The encoder's copy of the graph (or engine) has the manifest's sha256; IntegrityError otherwise."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else None
    if digest != manifest["files"][member]["sha256"]:
        raise IntegrityError(f"{path} is not the bundle's {member} (sha256 differs from manifest.json); "
                             "write the repository again with kdtool triton")


class TokenizerModel:
    """Ensemble step 1: questions -> windows (the encoder's inputs), each window's question and character offsets."""

    def __init__(self, args: dict, params: dict[str, str]):
        from kdtool.bundle.verified import open_verified_bundle
        from kdtool.predict import feature_config_for

        here = _version_dir(args)
        bundle = open_verified_bundle(here / params["bundle"], public_key=params.get("require_signature") or None)
        manifest = bundle.manifest
        if params.get("encoder_file"):
            check_encoder_file(here / params["encoder_file"], manifest, params["encoder_member"])
        self.tokenizer = _load_tokenizer(bundle)
        limit = SimpleNamespace(max_length=manifest.get("max_seq_length"), path=here / params["bundle"])
        self.features = feature_config_for(limit, FeatureConfig())
        self.inputs = [(i["name"], NUMPY_DTYPES[ONNX_TO_OIP[i["dtype"]]]) for i in manifest["inputs"]]

    def windows(self, examples: list[Example]) -> dict[str, np.ndarray]:
        from kdtool.engines.base import input_feed

        features = tokenize_examples(examples, self.tokenizer, self.features)
        batch = features.batch(list(range(len(features))))
        tensors = input_feed(batch, [n for n, _ in self.inputs], dict(self.inputs))
        length = tensors[self.inputs[0][0]].shape[1]
        offsets = np.full((len(features), length, 2), NO_SPAN, dtype=np.int64)
        for w, spans in enumerate(features.offsets):
            for t, span in enumerate(spans):
                if span is not None:
                    offsets[w, t] = span
        return {**tensors, WINDOW_QUESTION: np.asarray(features.example_index, dtype=np.int64), WINDOW_OFFSETS: offsets}

    def execute(self, requests):
        pb = _pb()
        out = []
        for r, request in enumerate(requests):
            try:
                out.append(_response(pb, self.windows(request_examples(pb, request, str(r)))))
            except InputError as err:
                out.append(_error(pb, err))
        return out

    def finalize(self):
        pass


class EncoderModel:
    """Ensemble step 2 on the Python backend: the bundle's ONNX graph through kdtool's verified ONNX Runtime
    engine (what the ``onnxruntime`` backend runs on a GPU server). Requests of one call share one pass."""

    def __init__(self, args: dict, params: dict[str, str]):
        from kdtool.engines import load_engine

        self.engine = load_engine(_version_dir(args) / params["bundle"], device=params.get("device") or "cpu",
                                  threads=_int_or_none(params.get("threads")), self_test=True)
        self.outputs = list(self.engine.outputs)  # the head's (start, end) logits, the names the config declares
        self.pad = {"input_ids": self.engine.tokenizer.pad_token_id or 0}

    def execute(self, requests):
        pb = _pb()
        feeds = [{n: pb.get_input_tensor_by_name(r, n).as_numpy() for n in self.engine.input_names} for r in requests]
        length = max(f["input_ids"].shape[1] for f in feeds)
        batch = {n: np.concatenate([np.pad(f[n], ((0, 0), (0, length - f[n].shape[1])), constant_values=self.pad.get(n, 0))
                                    for f in feeds]) for n in self.engine.input_names}
        results = self.engine.run(batch)
        out, row = [], 0
        for f in feeds:
            rows, width = f["input_ids"].shape
            out.append(_response(pb, {name: np.ascontiguousarray(r[row:row + rows, :width])
                                      for name, r in zip(self.outputs, results, strict=True)}))
            row += rows
        return out

    def finalize(self):
        self.engine.close()


class DecoderModel:
    """Ensemble step 3: every window's logits -> each question's best span, by kdtool's post-processing."""

    def __init__(self, args: dict, params: dict[str, str]):
        self.config = PostprocessConfig(max_answer_length=int(params.get("max_answer_length") or 30))
        self.logits = params["logits"].split(",")  # the encoder's (start, end) output names

    def answers(self, contexts: list[str], starts, ends, window_question, window_offsets) -> dict[str, np.ndarray]:
        examples = [Example(str(i), "", c, answers=()) for i, c in enumerate(contexts)]
        offsets = [[None if s < 0 else (int(s), int(e)) for s, e in window] for window in window_offsets]
        features = QAFeatures(input_ids=[[] for _ in offsets], attention_mask=[[] for _ in offsets], token_type_ids=None,
                              offsets=offsets, example_index=[int(q) for q in window_question])
        preds = postprocess(examples, features, list(starts), list(ends), self.config)
        return oip_columns([preds[ex.id].to_dict() for ex in examples])

    def execute(self, requests):
        pb = _pb()
        out = []
        for request in requests:
            def get(name, request=request):
                return pb.get_input_tensor_by_name(request, name).as_numpy()

            out.append(_response(pb, self.answers(_texts(pb, request, "context"), *(get(n) for n in self.logits),
                                                  get(WINDOW_QUESTION), get(WINDOW_OFFSETS))))
        return out

    def finalize(self):
        pass


ROLES = {"qa": QAModel, "tokenizer": TokenizerModel, "encoder": EncoderModel, "decoder": DecoderModel}
