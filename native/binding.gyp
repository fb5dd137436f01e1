{
  "targets": [
    {
      "target_name": "blas",
      "sources": ["src/blas.c", "src/reduce.c"],
      "cflags": ["-O3", "-std=c11", "-Wall", "-Wextra"],
      "libraries": ["-lopenblas"]
    }
  ]
}
