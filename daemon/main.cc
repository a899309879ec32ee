// Temporary entry point while the daemon is being written (replaced in this session).
int main() { return 0; }
