# CLIP labelling: the front feature is the subject's condition (seed 000 A.6.7).

rule label_clip_shard:
    input:
        stage_input_unsharded("label_clip"),
    output:
        temp(S("label_clip").shard_marker("{i}", "{n}")),
    params:
        **stage_params("label_clip"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("label_clip").shard_log("{i}", "{n}"),
    threads: P.workflow.threads
    resources:
        **stage_resources("label_clip"),
    shell:
        S("label_clip").shard_cmd("{wildcards.i}", "{wildcards.n}")


rule label_clip:
    input:
        stage_input("label_clip"),
    output:
        stage_output("label_clip"),
    params:
        **stage_params("label_clip"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("label_clip").log,
    threads: P.workflow.threads
    resources:
        **stage_resources("label_clip"),
    shell:
        S("label_clip").cmd
