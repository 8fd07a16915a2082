/* cuda_elementwise.cu: being written (issue 12) */
