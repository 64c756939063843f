# Pose, crop, mask and camera label; front selection by identity (seed 000 §3.1).

rule preprocess_fronts_shard:
    input:
        stage_input_unsharded("preprocess_fronts"),
    output:
        temp(S("preprocess_fronts").shard_marker("{i}", "{n}")),
    params:
        **stage_params("preprocess_fronts"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("preprocess_fronts").shard_log("{i}", "{n}"),
    threads: P.workflow.threads
    resources:
        **stage_resources("preprocess_fronts"),
    shell:
        S("preprocess_fronts").shard_cmd("{wildcards.i}", "{wildcards.n}")


rule preprocess_fronts:
    input:
        stage_input("preprocess_fronts"),
    output:
        stage_output("preprocess_fronts"),
    params:
        **stage_params("preprocess_fronts"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("preprocess_fronts").log,
    threads: P.workflow.threads
    resources:
        **stage_resources("preprocess_fronts"),
    shell:
        S("preprocess_fronts").cmd


rule select_front:
    input:
        stage_input("select_front"),
    output:
        stage_output("select_front"),
    params:
        **stage_params("select_front"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("select_front").log,
    threads: P.workflow.threads
    resources:
        **stage_resources("select_front"),
    shell:
        S("select_front").cmd


rule preprocess_views_shard:
    input:
        stage_input_unsharded("preprocess_views"),
    output:
        temp(S("preprocess_views").shard_marker("{i}", "{n}")),
    params:
        **stage_params("preprocess_views"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("preprocess_views").shard_log("{i}", "{n}"),
    threads: P.workflow.threads
    resources:
        **stage_resources("preprocess_views"),
    shell:
        S("preprocess_views").shard_cmd("{wildcards.i}", "{wildcards.n}")


rule preprocess_views:
    input:
        stage_input("preprocess_views"),
    output:
        stage_output("preprocess_views"),
    params:
        **stage_params("preprocess_views"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("preprocess_views").log,
    threads: P.workflow.threads
    resources:
        **stage_resources("preprocess_views"),
    shell:
        S("preprocess_views").cmd
