"""FLUX.1 Kontext synthesiser for synth_front and synth_views (BalanceHead §3.1, A.2, Fig. 7).

Unlike the procedural synthesiser, which re-renders a `Subject`, this backend edits an IMAGE: the
kept source photo for front candidates, the selected front for views. The prompt is Fig. 7's
positive template with `[view]` replaced by the view keywords; the negative prompt is Fig. 7's
(it only acts when `true_cfg_scale` > 1, see `FluxKontextParams`).

Determinism: one `torch.Generator` per item, seeded with the item's seed, so an item's image does
not depend on which batch it lands in or on its position there (up to floating-point batching
effects on GPU kernels). Batches of `batch_size` images go through one pipeline call; a tqdm bar
counts batches and diffusers' own bar counts denoising steps.
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from tqdm import tqdm

from balancehead.world.synth import SynthResult

from . import weights as W
from .params import FluxKontextParams

PARAM = "synthesizer.flux_kontext.model"
OFFLINE = "synthesizer.backend: offline (ProceduralSynthesizer)"
PAPER_FRONT_VIEW = "facing forward, front view"


def fit_image(rgb: np.ndarray, width: int, height: int, mode: str) -> Image.Image:
    """Bring an RGB uint8 image to width x height: 'pad' (white borders, aspect kept), 'crop'
    (centre crop to the aspect) or 'stretch'; Lanczos resampling."""
    im = Image.fromarray(np.ascontiguousarray(np.asarray(rgb)[..., :3]))
    w, h = im.size
    if mode == "crop":
        scale = max(width / w, height / h)
        nw, nh = max(width, round(w * scale)), max(height, round(h * scale))
        im = im.resize((nw, nh), Image.Resampling.LANCZOS)
        left, top = (nw - width) // 2, (nh - height) // 2
        return im.crop((left, top, left + width, top + height))
    if mode == "pad":
        scale = min(width / w, height / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = Image.new("RGB", (width, height), (255, 255, 255))
        canvas.paste(im.resize((nw, nh), Image.Resampling.LANCZOS), ((width - nw) // 2, (height - nh) // 2))
        return canvas
    return im.resize((width, height), Image.Resampling.LANCZOS)


class FluxKontextSynthesizer:
    """`.edit(images, prompts, seeds)` batched; `.front(image, seed)` / `.view(image, view_text, seed)`."""

    def __init__(self, params: FluxKontextParams, positive_prompt: str, negative_prompt: str = "",
                 front_view_text: str = PAPER_FRONT_VIEW):
        import torch
        from diffusers import FluxKontextPipeline

        if "[view]" not in positive_prompt:
            raise ValueError("positive_prompt must contain the placeholder '[view]'")
        self.p = params
        self.positive_prompt = positive_prompt
        self.negative_prompt = negative_prompt
        self.front_view_text = front_view_text
        W.check_device(params.device, "synthesizer.flux_kontext.device")
        if params.cpu_offload != "none":
            try:
                import accelerate  # noqa: F401
            except ImportError as e:
                raise RuntimeError("synthesizer.flux_kontext.cpu_offload needs the `accelerate` package; "
                                   "install it or set cpu_offload: none") from e
        path = W.resolve(params.model, param=PARAM, offline=OFFLINE, what="FLUX.1 Kontext",
                         local_files_only=params.local_files_only, allow_download=params.allow_download,
                         revision=params.revision)
        W.refuse_pickle_only(path, PARAM, OFFLINE, "FLUX.1 Kontext")
        self.path = path
        self.sums = W.checksum(path)
        W.verify(self.sums, params.expected_sha256, "synthesizer.flux_kontext.expected_sha256")
        with W.hub_offline(params.allow_download):
            pipe = FluxKontextPipeline.from_pretrained(path, local_files_only=True, use_safetensors=True,
                                                       dtype=W.torch_dtype(params.dtype))
        if params.cpu_offload == "model":
            pipe.enable_model_cpu_offload(device=params.device)
        elif params.cpu_offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=params.device)
        else:
            pipe.to(params.device)
        pipe.set_progress_bar_config(disable=not params.progress, leave=False, desc="flux steps")
        self.pipe = pipe
        self._torch = torch
        self.name = f"flux-kontext:{params.model}"

    def prompt(self, view_text: str) -> str:
        return self.positive_prompt.replace("[view]", view_text)

    def _generator(self, seed: int):
        device = "cpu" if self.p.generator_device == "cpu" else self.p.device
        return self._torch.Generator(device=device).manual_seed(int(seed))

    def edit(self, images, prompts: list[str], seeds: list[int], negative_prompts: list[str] | None = None) -> list[np.ndarray]:
        """Edit each image with its prompt and seed -> uint8 (height, width, 3) arrays, in order."""
        p = self.p
        n = len(images)
        if not (len(prompts) == len(seeds) == n):
            raise ValueError(f"images/prompts/seeds lengths differ: {n}, {len(prompts)}, {len(seeds)}")
        negatives = negative_prompts if negative_prompts is not None else [self.negative_prompt] * n
        use_negative = p.true_cfg_scale > 1.0 and any(negatives)
        out: list[np.ndarray] = []
        starts = range(0, n, p.batch_size)
        for s in tqdm(starts, desc="flux kontext", unit="batch", disable=not p.progress or len(starts) < 2):
            sl = slice(s, s + p.batch_size)
            batch = [fit_image(im, p.width, p.height, p.input_fit) for im in images[sl]]
            result = self.pipe(
                image=batch, prompt=list(prompts[sl]),
                negative_prompt=list(negatives[sl]) if use_negative else None,
                true_cfg_scale=p.true_cfg_scale, guidance_scale=p.guidance_scale,
                num_inference_steps=p.steps, height=p.height, width=p.width, max_area=p.height * p.width,
                _auto_resize=p.auto_resize_input, max_sequence_length=p.max_sequence_length,
                generator=[self._generator(seed) for seed in seeds[sl]], output_type="np")
            imgs = np.clip(np.rint(np.asarray(result.images) * 255.0), 0, 255).astype(np.uint8)
            out.extend(list(imgs))
        return out

    def _result(self, rgb: np.ndarray, view_text: str, seed: int) -> SynthResult:
        # No ground truth exists for a real generator: the sidecar records what was asked.
        return SynthResult(rgb=rgb, truth={"backend": self.name, "view_text": view_text, "seed": int(seed)})

    def front(self, image: np.ndarray, seed: int) -> SynthResult:
        """A front-view candidate of the person in `image` (the source photo)."""
        return self.view(image, self.front_view_text, seed)

    def view(self, image: np.ndarray, view_text: str, seed: int) -> SynthResult:
        """The person of `image` (the selected front) seen as `view_text` says."""
        return self._result(self.edit([image], [self.prompt(view_text)], [seed])[0], view_text, seed)

    def provenance(self) -> dict:
        p = self.p
        return {"backend": "flux.1-kontext", "model_id": p.model, "revision": p.revision,
                "resolved_path": str(self.path), "weights_sha256": self.sums["sha256"],
                "weight_files": self.sums["files"], "dtype": p.dtype, "steps": p.steps,
                "guidance_scale": p.guidance_scale, "true_cfg_scale": p.true_cfg_scale,
                "size": [p.width, p.height], "input_fit": p.input_fit}
