# The filtering agent (seed 000 A.2, Figs. 8-10).

rule filter_views_shard:
    input:
        stage_input_unsharded("filter_views"),
    output:
        temp(S("filter_views").shard_marker("{i}", "{n}")),
    params:
        **stage_params("filter_views"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("filter_views").shard_log("{i}", "{n}"),
    threads: P.workflow.threads
    resources:
        **stage_resources("filter_views"),
    shell:
        S("filter_views").shard_cmd("{wildcards.i}", "{wildcards.n}")


rule filter_views:
    input:
        stage_input("filter_views"),
    output:
        stage_output("filter_views"),
    params:
        **stage_params("filter_views"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("filter_views").log,
    threads: P.workflow.threads
    resources:
        **stage_resources("filter_views"),
    shell:
        S("filter_views").cmd
