# Image synthesis: front candidates and multi-view expansion (seed 000 §3.1, A.2 Fig. 7).

rule synth_front_shard:
    input:
        stage_input_unsharded("synth_front"),
    output:
        temp(S("synth_front").shard_marker("{i}", "{n}")),
    params:
        **stage_params("synth_front"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("synth_front").shard_log("{i}", "{n}"),
    threads: P.workflow.threads
    resources:
        **stage_resources("synth_front"),
    shell:
        S("synth_front").shard_cmd("{wildcards.i}", "{wildcards.n}")


rule synth_front:
    input:
        stage_input("synth_front"),
    output:
        stage_output("synth_front"),
    params:
        **stage_params("synth_front"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("synth_front").log,
    threads: P.workflow.threads
    resources:
        **stage_resources("synth_front"),
    shell:
        S("synth_front").cmd


rule synth_views_shard:
    input:
        stage_input_unsharded("synth_views"),
    output:
        temp(S("synth_views").shard_marker("{i}", "{n}")),
    params:
        **stage_params("synth_views"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("synth_views").shard_log("{i}", "{n}"),
    threads: P.workflow.threads
    resources:
        **stage_resources("synth_views"),
    shell:
        S("synth_views").shard_cmd("{wildcards.i}", "{wildcards.n}")


rule synth_views:
    input:
        stage_input("synth_views"),
    output:
        stage_output("synth_views"),
    params:
        **stage_params("synth_views"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("synth_views").log,
    threads: P.workflow.threads
    resources:
        **stage_resources("synth_views"),
    shell:
        S("synth_views").cmd
