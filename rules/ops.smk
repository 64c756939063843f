# Custom op extensions (C++/CUDA) built with ninja through torch.utils.cpp_extension.

rule build_ops:
    input:
        stage_input("build_ops"),
    output:
        stage_output("build_ops"),
    params:
        **stage_params("build_ops"),
    conda:
        "../envs/balancehead.yaml"
    log:
        S("build_ops").log,
    threads: P.workflow.threads
    resources:
        **stage_resources("build_ops"),
    shell:
        S("build_ops").cmd
