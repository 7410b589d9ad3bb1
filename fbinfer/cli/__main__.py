from fbinfer.cli import main

main()
