from aidaccess.cli import main

main()
