/* cuda_backend.cu: being written (issue 12) */
