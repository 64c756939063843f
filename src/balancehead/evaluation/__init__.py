"""Closing the loop after training: GAN-prior sampling (PanoLAM protocols), PTI inversion, the
evaluation metrics (FID variants, KID, MKNND, ID consistency, reconstruction metrics, the per-yaw-bin
FID bias curve) and the self-contained HTML report. One concern per module; stages live in
`balancehead.stages.{sample_prior,invert,evaluate,report}`."""
