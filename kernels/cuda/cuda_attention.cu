/* cuda_attention.cu: being written (issue 12) */
