// Command wsedge is the WebSocket edge server.
package main

func main() {}
