# Training the semantic-conditional 3D GAN with ViCiCo (seed 000 §4-5, A.6). On SLURM the job gets
# the GPUs of `workflow.resources.train.gpus`; a SIGTERM checkpoints and exits with
# train.requeue_exit_code, and the retry resumes from the last checkpoint.

rule train:
    input:
        stage_input("train"),
    output:
        stage_output("train"),
    params:
        **stage_params("train"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("train").log,
    threads: P.workflow.threads
    resources:
        **stage_resources("train"),
    shell:
        S("train").cmd
