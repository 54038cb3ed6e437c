from neurofabric.cli import main

main()
