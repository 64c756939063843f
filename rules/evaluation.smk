# Closing the loop: GAN-prior sampling (seed 004 §3.4), PTI inversion (seed 000 §5.2), metrics
# (seed 000 Table 1, seed 001 §4.3, seed 004 Table 2, FID per 45° yaw bin) and the HTML report.

rule sample_prior:
    input:
        stage_input("sample_prior"),
    output:
        stage_output("sample_prior"),
    params:
        **stage_params("sample_prior"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("sample_prior").log,
    threads: P.workflow.threads
    resources:
        **stage_resources("sample_prior"),
    shell:
        S("sample_prior").cmd

rule invert:
    input:
        stage_input("invert"),
    output:
        stage_output("invert"),
    params:
        **stage_params("invert"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("invert").log,
    threads: P.workflow.threads
    resources:
        **stage_resources("invert"),
    shell:
        S("invert").cmd

rule evaluate:
    input:
        stage_input("evaluate"),
    output:
        stage_output("evaluate"),
    params:
        **stage_params("evaluate"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("evaluate").log,
    threads: P.workflow.threads
    resources:
        **stage_resources("evaluate"),
    shell:
        S("evaluate").cmd

rule report:
    input:
        stage_input("report"),
    output:
        stage_output("report"),
    params:
        **stage_params("report"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("report").log,
    threads: P.workflow.threads
    resources:
        **stage_resources("report"),
    shell:
        S("report").cmd
