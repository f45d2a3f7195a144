from deepscan.cli import main

main()
