{
  "targets": [
    {
      "target_name": "blas",
      "sources": ["src/blas.c", "src/fused.c", "src/reduce.c", "src/attention.c"],
      "cflags": ["-O3", "-std=c11", "-Wall", "-Wextra", "-fno-trapping-math"],
      "libraries": ["-lopenblas", "-lpthread"]
    }
  ]
}
