/* cuda_norm.cu: being written (issue 12) */
