"""Qwen2.5-VL filtering agent (BalanceHead A.2, Figs. 8-10) with the HeuristicJudge interface.

Each decision is one greedy generation on a chat message holding the image(s) then the prompt
from `filter_views.prompts`:

* classify  — the view + `classification`          -> parse_classification -> standard/non-standard
* artifacts — the view + `artifact`                 -> parse_artifact       -> normal/severe artifacts
* match     — Image A (front), Image B (view) + `match_standard` or `match_nonstandard`, whose
  {attrs1}/{attrs2} are filled by the attribute query (see `QwenVLJudgeParams`) -> parse_match -> YES/NO

A reply the parser cannot read becomes `Verdict(None, <raw reply>, score)`: recorded, never
raised; the stage's `filter_views.unparseable` policy decides. `Verdict.score` is the mean
log-probability of the generated tokens (a confidence; 0 = certain).

`judge_views` runs the three decisions for many views in batches (left-padded, one generate call
per batch and decision); the single-item methods wrap it, so the stage can call either.
"""
from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from balancehead.backends.judge import (Verdict, estimate_attributes, format_attributes, parse_artifact,
                                        parse_classification, parse_match)

from . import weights as W
from .params import QwenVLJudgeParams

PARAM = "filter_views.qwen_vl.model"
OFFLINE = "filter_views.backend: offline (HeuristicJudge)"


@dataclass(frozen=True)
class JudgePrompts:
    """The four prompt texts (filter_views.prompts)."""

    classification: str
    artifact: str
    match_standard: str
    match_nonstandard: str

    @classmethod
    def from_params(cls, prompts) -> "JudgePrompts":
        return cls(prompts.classification, prompts.artifact, prompts.match_standard, prompts.match_nonstandard)


def fill_match_prompt(template: str, attrs1: str, attrs2: str) -> str:
    """Substitute the two placeholders literally (str.format would trip on other braces)."""
    return template.replace("{attrs1}", attrs1).replace("{attrs2}", attrs2)


def clean_attributes(text: str | None, max_chars: int) -> str:
    """First non-empty line of an attribute reply, without markdown, cut at a word boundary."""
    for line in (text or "").splitlines():
        line = re.sub(r"[*_`#]+", "", line).strip(" -\t")
        if line:
            if len(line) > max_chars:
                line = line[:max_chars].rsplit(" ", 1)[0] + " ..."
            return line
    return "unknown"


def _image_key(rgb: np.ndarray) -> str:
    a = np.ascontiguousarray(rgb)
    return hashlib.sha256(a.tobytes() + str(a.shape).encode()).hexdigest()


class QwenVLJudge:
    """Production judge: `.classify/.artifacts/.match` (HeuristicJudge's signatures) + `.judge_views`."""

    def __init__(self, params: QwenVLJudgeParams, prompts):
        import torch
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        self.p = params
        self.prompts = prompts if isinstance(prompts, JudgePrompts) else JudgePrompts.from_params(prompts)
        W.check_device(params.device, "filter_views.qwen_vl.device")
        path = W.resolve(params.model, param=PARAM, offline=OFFLINE, what="Qwen2.5-VL",
                         local_files_only=params.local_files_only, allow_download=params.allow_download,
                         revision=params.revision)
        W.refuse_pickle_only(path, PARAM, OFFLINE, "Qwen2.5-VL")
        self.path = path
        self.sums = W.checksum(path)
        W.verify(self.sums, params.expected_sha256, "filter_views.qwen_vl.expected_sha256")
        with W.hub_offline(params.allow_download):
            self.processor = AutoProcessor.from_pretrained(
                path, local_files_only=True, trust_remote_code=False,
                size={"shortest_edge": params.min_pixels, "longest_edge": params.max_pixels})
            self.model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                path, local_files_only=True, trust_remote_code=False, use_safetensors=True,
                dtype=W.torch_dtype(params.dtype), attn_implementation=params.attn_implementation)
        self.model.to(params.device).eval()
        self.processor.tokenizer.padding_side = "left"  # generation continues every row at the same column
        self._torch = torch
        self._front_attrs: OrderedDict[str, str] = OrderedDict()
        self.name = f"qwen2.5-vl:{params.model}"

    # -------------------------------------------------------------------------------------------
    # Generation
    # -------------------------------------------------------------------------------------------

    def generate(self, batch: list[tuple[list[np.ndarray], str]], max_new_tokens: int) -> list[tuple[str, float]]:
        """Greedy replies to (images, prompt) messages -> [(text, mean token log-prob)]."""
        from PIL import Image

        torch = self._torch
        texts, images = [], []
        for imgs, prompt in batch:
            content = [{"type": "image"} for _ in imgs] + [{"type": "text", "text": prompt}]
            texts.append(self.processor.apply_chat_template([{"role": "user", "content": content}],
                                                            add_generation_prompt=True, tokenize=False))
            images.extend(Image.fromarray(np.ascontiguousarray(np.asarray(im)[..., :3])) for im in imgs)
        inputs = self.processor(text=texts, images=images, return_tensors="pt", padding=True).to(self.p.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                                      return_dict_in_generate=True, output_scores=True,
                                      pad_token_id=self.processor.tokenizer.pad_token_id)
        new = out.sequences[:, inputs["input_ids"].shape[1]:]
        logp = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, (list, tuple)) else [eos]) | {self.processor.tokenizer.pad_token_id}
        live = ~torch.isin(new, torch.tensor(sorted(e for e in eos if e is not None), device=new.device))
        scores = ((logp.float() * live).sum(1) / live.sum(1).clamp(min=1)).tolist()
        replies = self.processor.batch_decode(new, skip_special_tokens=True)
        return [(r.strip(), float(s)) for r, s in zip(replies, scores)]

    def _batched(self, batch, max_new_tokens: int, desc: str) -> list[tuple[str, float]]:
        bs = self.p.batch_size
        starts = range(0, len(batch), bs)
        out = []
        for s in tqdm(starts, desc=desc, unit="batch", disable=not self.p.progress or len(starts) < 2):
            out.extend(self.generate(batch[s:s + bs], max_new_tokens))
        return out

    # -------------------------------------------------------------------------------------------
    # Attribute query
    # -------------------------------------------------------------------------------------------

    def attributes_text(self, rgbs: list[np.ndarray], masks=None, cache: bool = False) -> list[str]:
        """Attribute line of each image (the matching prompt's {attrs})."""
        p = self.p
        if p.attributes == "none":
            return ["not provided"] * len(rgbs)
        if p.attributes == "heuristic":
            from balancehead.backends.segment import offline_mask

            out = []
            for i, rgb in enumerate(rgbs):
                m = masks[i] if masks is not None and masks[i] is not None else offline_mask(np.asarray(rgb))
                out.append(format_attributes(estimate_attributes(np.asarray(rgb), np.asarray(m))))
            return out
        keys = [_image_key(r) if cache else ("item", i) for i, r in enumerate(rgbs)]
        need: dict = {}  # one query per distinct uncached image
        for i, k in enumerate(keys):
            if k not in self._front_attrs:
                need.setdefault(k, i)
        replies = self._batched([([rgbs[i]], p.attribute_prompt) for i in need.values()],
                                p.attribute_max_new_tokens, "vlm attributes")
        fresh = {k: clean_attributes(text, p.attribute_max_chars) for k, (text, _) in zip(need, replies)}
        if cache:
            self._front_attrs.update(fresh)
            while len(self._front_attrs) > 256:
                self._front_attrs.popitem(last=False)
        return [fresh[k] if k in fresh else self._front_attrs[k] for k in keys]

    # -------------------------------------------------------------------------------------------
    # Decisions
    # -------------------------------------------------------------------------------------------

    def classify_batch(self, rgbs) -> list[Verdict]:
        replies = self._batched([([r], self.prompts.classification) for r in rgbs], self.p.max_new_tokens, "vlm classify")
        return [Verdict(parse_classification(t), t, s) for t, s in replies]

    def artifacts_batch(self, rgbs) -> list[Verdict]:
        replies = self._batched([([r], self.prompts.artifact) for r in rgbs], self.p.max_new_tokens, "vlm artifacts")
        return [Verdict(parse_artifact(t), t, s) for t, s in replies]

    def match_batch(self, front_rgbs, view_rgbs, standard: list[bool], front_masks=None, view_masks=None) -> list[Verdict]:
        a1 = self.attributes_text(front_rgbs, front_masks, cache=True)
        a2 = self.attributes_text(view_rgbs, view_masks)
        batch = []
        for f, v, std, x1, x2 in zip(front_rgbs, view_rgbs, standard, a1, a2):
            template = self.prompts.match_standard if std else self.prompts.match_nonstandard
            batch.append(([f, v], fill_match_prompt(template, x1, x2)))
        replies = self._batched(batch, self.p.max_new_tokens, "vlm match")
        return [Verdict(parse_match(t), t, s) for t, s in replies]

    def judge_views(self, front_rgbs, view_rgbs, front_masks=None, view_masks=None):
        """[(class, artifact, match)] per view. An unreadable classification uses the
        non-standard matching prompt (the one that does not demand matching hair flow)."""
        cls = self.classify_batch(view_rgbs)
        art = self.artifacts_batch(view_rgbs)
        match = self.match_batch(front_rgbs, view_rgbs, [c.label == "standard" for c in cls], front_masks, view_masks)
        return list(zip(cls, art, match))

    # HeuristicJudge-compatible single-item calls (mask and est_yaw are not needed by the VLM).
    def classify(self, rgb, mask=None, est_yaw: float | None = None) -> Verdict:
        return self.classify_batch([rgb])[0]

    def artifacts(self, rgb, mask=None) -> Verdict:
        return self.artifacts_batch([rgb])[0]

    def match(self, front_rgb, front_mask, view_rgb, view_mask, standard: bool, est_yaw: float | None = None) -> Verdict:
        return self.match_batch([front_rgb], [view_rgb], [bool(standard)], [front_mask], [view_mask])[0]

    def provenance(self) -> dict:
        return {"backend": "qwen2.5-vl", "model_id": self.p.model, "revision": self.p.revision,
                "resolved_path": str(self.path), "weights_sha256": self.sums["sha256"],
                "weight_files": self.sums["files"], "dtype": self.p.dtype, "decoding": "greedy",
                "attributes": self.p.attributes}
