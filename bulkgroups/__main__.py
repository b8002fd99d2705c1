from bulkgroups.cli import main

main()
