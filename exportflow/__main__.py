from exportflow.cli import main

main()
