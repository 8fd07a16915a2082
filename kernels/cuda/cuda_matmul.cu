/* cuda_matmul.cu: being written (issue 12) */
