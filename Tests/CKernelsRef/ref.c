int ckref_dummy(void){return 0;}
