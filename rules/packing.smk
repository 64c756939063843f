# Dataset packing: shards, manifest, conditions, dataset card, EG3D export, MLflow run.

rule pack_dataset:
    input:
        stage_input("pack_dataset"),
    output:
        stage_output("pack_dataset"),
    params:
        **stage_params("pack_dataset"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("pack_dataset").log,
    threads: P.workflow.threads
    resources:
        **stage_resources("pack_dataset"),
    shell:
        S("pack_dataset").cmd
