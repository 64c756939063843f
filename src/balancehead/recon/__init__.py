"""Feed-forward 3D Gaussian head reconstruction (PanoLAM and PercHead) -- issue 13.

Same layer as `models/`: imports only leaves (camera, models' sampling helpers), never stages/train/evaluation.

* `gaussians`  -- the Gaussian set (means, quaternions, scales, opacities, colours) and its covariances;
* `rasterize`  -- a differentiable splatting rasteriser: dense pure-PyTorch path, gsplat adapter on CUDA;
* `ply`        -- standard 3DGS `.ply` export/import;
* `template`   -- the template mesh (a user's FLAME-like file, or the embedded world's head) and its densification;
* `config`, `model` -- PanoLAM and PercHead as named presets over shared modules;
* `losses`     -- L1, SSIM, PSNR and the perceptual-feature hook.
"""
