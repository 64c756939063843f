# Ingestion and the IQA gate (seed 000 §3.1).

rule ingest_shard:
    input:
        stage_input_unsharded("ingest"),
    output:
        temp(S("ingest").shard_marker("{i}", "{n}")),
    params:
        **stage_params("ingest"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("ingest").shard_log("{i}", "{n}"),
    threads: P.workflow.threads
    resources:
        **stage_resources("ingest"),
    shell:
        S("ingest").shard_cmd("{wildcards.i}", "{wildcards.n}")


rule ingest:
    input:
        stage_input("ingest"),
    output:
        stage_output("ingest"),
    params:
        **stage_params("ingest"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("ingest").log,
    threads: P.workflow.threads
    resources:
        **stage_resources("ingest"),
    shell:
        S("ingest").cmd


rule assess_quality_shard:
    input:
        stage_input_unsharded("assess_quality"),
    output:
        temp(S("assess_quality").shard_marker("{i}", "{n}")),
    params:
        **stage_params("assess_quality"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("assess_quality").shard_log("{i}", "{n}"),
    threads: P.workflow.threads
    resources:
        **stage_resources("assess_quality"),
    shell:
        S("assess_quality").shard_cmd("{wildcards.i}", "{wildcards.n}")


rule assess_quality:
    input:
        stage_input("assess_quality"),
    output:
        stage_output("assess_quality"),
    params:
        **stage_params("assess_quality"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("assess_quality").log,
    threads: P.workflow.threads
    resources:
        **stage_resources("assess_quality"),
    shell:
        S("assess_quality").cmd
