"""Feed-forward 3D Gaussian head reconstruction (PanoLAM and PercHead) -- issue 13.

Same layer as `models/`: imports models/data/world and leaves (camera, params schemas), never
stages/train/evaluation.

* `gaussians`  -- the Gaussian set (means, quaternions, scales, opacities, colours) and its covariances;
* `rasterize`  -- a differentiable splatting rasteriser: dense pure-PyTorch path, gsplat adapter on CUDA;
* `ply`        -- standard 3DGS `.ply` export/import;
* `template`   -- the template mesh (a user's FLAME-like file, or the embedded world's head) and its densification;
* `config`, `model` -- PanoLAM and PercHead as named presets over shared modules;
* `losses`     -- L1, SSIM, PSNR and the perceptual-feature hook;
* `checkpoint` -- save_reconstructor / load_reconstructor (safetensors + JSON, digests checked);
* `views`      -- the prior's (or a packed dataset's) views grouped by identity, for training and scoring;
* `params`     -- the `train_recon` params section.

The training loop is `train.recon_loop` (it reuses train's preemption and checkpoint helpers); the stage is
`stages.train_recon`.
"""
