{
  "targets": [
    {
      "target_name": "blas",
      "sources": ["src/blas.c", "src/attention.c"],
      "cflags": ["-O3", "-std=c11", "-Wall", "-Wextra"],
      "libraries": ["-lopenblas", "-lpthread"]
    }
  ]
}
