console.log("hello from the node app");
