/* cuda_sdpa.c: being written (issue 12) */
